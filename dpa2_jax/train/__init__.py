"""Training: loss, learning-rate schedules, optimizer, train state, step and loop."""
