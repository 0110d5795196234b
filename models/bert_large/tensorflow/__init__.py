"""TensorFlow 2 / Keras 3 BERT: modeling, checkpoints, tokenization, training scripts."""
