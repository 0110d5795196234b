"""Habana's entry point `$PYTHON run_squad.py --flag=value ...`, run from the package root.

Runs models/bert_large/tensorflow/run_squad.py as if it were started itself (same flags, `--help`,
output and exit status); this file only keeps Habana's path working.
"""

import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "bert_large",
                                "tensorflow", "run_squad.py"), run_name="__main__")
