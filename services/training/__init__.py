"""Train, evaluate and version the RUL model (the only package that imports TensorFlow)."""
