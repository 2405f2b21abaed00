"""Datasets: readers/writers for the real formats, the POPE builder and the synthetic knowledge world."""
