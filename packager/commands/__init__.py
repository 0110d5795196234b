"""One module per ``modelpkg`` command; ``packager.cli`` wires them. No archive logic here."""
