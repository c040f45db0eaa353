"""Real data for calibration, validation and training: readers and the one preprocessing path they share."""
