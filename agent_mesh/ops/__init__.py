"""Installing and checking a host: setup, doctor, demo."""
