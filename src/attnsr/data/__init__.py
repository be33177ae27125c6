"""Data: image I/O, MATLAB-exact resize, benchmark sets."""
