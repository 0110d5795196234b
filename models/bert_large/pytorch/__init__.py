"""PyTorch BERT-Large pretraining (phase 1 / phase 2) for Xeon: model, LAMB, TFRecord input."""
