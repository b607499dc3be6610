"""Pixel-level helpers shared by the stages: source detection, neighbour masking, display."""
