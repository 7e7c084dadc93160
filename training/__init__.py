"""kwsd-train: the training package (TensorFlow lives only here, never on the Pi)."""
