"""Workloads to run as compute instances: a CPU burner driven by a trace or a file."""
