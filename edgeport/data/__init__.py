"""Real data for calibration, validation and training: readers and the one preprocessing path they share."""

# sample counts when the user names none: the CLI, recipes and the API all read these two
DEFAULT_CALIBRATION = 200
DEFAULT_VALIDATION = 500
# Fewest calibration samples int8 should get, measured by benchmarks/calibration_samples.py on the four trained
# Fashion-MNIST models: from 32 samples on, every model's and target's top-1 stays within 0.2 points of its
# accuracy with 512 (1 sample costs up to 2.5 points; docs/quantization.md#how-many-calibration-samples).
# A single source whose half would be fewer is calibrated whole (edgeport.data.calibration).
MIN_CALIBRATION = 32
MIN_CALIBRATION_DOC = "docs/quantization.md#how-many-calibration-samples"
