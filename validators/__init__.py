"""Data quality: checks over bars that yield a quality report and score."""
