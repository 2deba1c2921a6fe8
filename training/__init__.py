"""Data → model: dataset formats, validation, splits, synthetic scenes, training, export, evaluation."""
