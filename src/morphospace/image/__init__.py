"""Pixel-level helpers shared by the stages.

``sources``   source detection in one cutout (``sep``): the central galaxy and the others;
``masking``   neighbour masking: every source but the central galaxy hidden
              (``RUN/cube_masked.npy``);
``geometry``  radial weights, the dihedral transforms and the canonical orientation (torch);
``display``   images as the eye sees them (the one display conversion of the figures).
"""
