"""Habana's `$PYTHON pack_pretraining_data_tfrec.py --input-glob ... --output-dir ...`, run from
data_preprocessing/ as in Habana's README (or from anywhere).

Runs models/bert_large/pack_pretraining_data_tfrec.py (the packer every BERT package ships) as if
it were started itself: same flags, `--help`, output and exit status.
"""

import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models",
                                "bert_large", "pack_pretraining_data_tfrec.py"), run_name="__main__")
