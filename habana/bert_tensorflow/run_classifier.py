"""Habana's entry point `$PYTHON run_classifier.py --flag=value ...`, run from the package root.

Runs models/bert_large/tensorflow/run_classifier.py as if it were started itself (same flags, `--help`,
output and exit status); this file only keeps Habana's path working.
"""

import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "bert_large",
                                "tensorflow", "run_classifier.py"), run_name="__main__")
