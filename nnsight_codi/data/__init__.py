"""Datasets: synthetic problems, evaluation sources, GSM8k-Aug files and chains, answer scoring."""
