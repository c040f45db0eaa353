"""Real data for calibration, validation and training: readers and the one preprocessing path they share."""

# sample counts when the user names none: the CLI, recipes and the API all read these two
DEFAULT_CALIBRATION = 200
DEFAULT_VALIDATION = 500
