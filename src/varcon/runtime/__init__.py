"""The runtime shared by training and evaluation: config, data building, processes,
progress and metrics logging, checkpoint writing, learning-rate schedules."""
