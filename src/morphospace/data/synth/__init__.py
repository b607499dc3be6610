"""The built-in synthetic survey: labelled mock SDSS-like gri cutouts rendered with GalSim.

:func:`make_survey` writes a folder that reads like a real survey::

    OUT/
      images/synth_000000.png ...   8-bit RGB PNG (lossless, so the same seed gives the same bytes)
      catalogue.csv                 id, file, morphology, then truth columns (see ``TRUTH_COLUMNS``)
      morphospace_synth.json        marker: generator version, seed, n, size, column meanings

Six morphologies (column ``morphology``): ``elliptical``, ``lenticular``, ``spiral`` (bulge +
exponential disk + 2-4 logarithmic arms of either winding), ``barred_spiral`` (a bar whose ends
start two arms), ``edge_on`` (a thick inclined disk) and ``irregular`` (a clumpy knotty disk, or
a merger of two disturbed galaxies with tidal tails). The nuisances a morphology method should
ignore are drawn at random and recorded: orientation, inclination, handedness, size, flux, seeing,
sky noise and bright neighbours (0-2 companions, stars or galaxies, some cut by the frame edge),
plus unrecorded-position faint field sources (only their number is kept). Each galaxy also gets a
*mock* sky position (``ra``, ``dec``: a made-up spot in a 2 x 2 degree patch, from the seed), so
that the sky-position path of the ingest, the export and the report runs on the mock survey too.

The look follows SDSS gri cutouts as shown to Galaxy Zoo: each component (bulge, disk, arms, bar,
knots, neighbours) has its own g-r and r-i colour and is convolved with one Moffat PSF; the three
bands get CCD noise (GalSim, seeded per galaxy), correlated over about a pixel as in the resampled
SDSS cutouts, and are mapped to RGB (R = i, G = r, B = g) with a Lupton et al. (2004) asinh
stretch whose colour is then smoothed like a JPEG's chroma. Frames are ``size`` pixels at the
Galaxy Zoo proportion: the galaxy's R90 is about 11 % of the frame side, so it sits well inside
the central half that the default preprocessing keeps. Sizes, radial profiles, sky level, noise
(per pixel and binned) and core/disk colours were tuned against ``sdss-gz1`` resized to 128 px
(see ``benchmarks/make_synth_comparison.py`` and ``docs/synth_vs_sdss.png``).

The main galaxy is drawn by GalSim in Fourier space (Sersic, Exponential, InclinedExponential,
RandomKnots, Gaussian profiles), multiplied by the PSF transform and summed per band. Spiral arms
are not a GalSim profile: the arm light (an exponential disk modulated by a logarithmic-spiral
pattern, plus star-forming knots along the arms) is computed as a numpy array in the disk plane,
projected, and convolved with the same GalSim PSF transform.

Every galaxy draws its parameters from its own random stream, seeded by ``(seed, index)``, so a
survey is the same bytes whatever the number of worker processes, and the first ``k`` galaxies of
a larger survey with the same seed are the same galaxies. Classes are balanced: each block of six
consecutive galaxies holds every morphology once, in a seeded random order.

Conventions (as displayed, i.e. row 0 of the PNG at the top): pixel positions ``x`` = column and
``y`` = row, 0-based; angles are degrees counter-clockwise from the +x axis; ``winding = +1``
means an arm, followed outward from the centre, turns clockwise on the screen.

Modules, in the order a galaxy is made: :mod:`.params` (every random draw),
:mod:`.canvas` (the PSF-convolved frame), :mod:`.galaxies` (the main galaxy of each class),
:mod:`.observe` (neighbours and noise: :func:`render_bands`), :mod:`.stretch` (the RGB
display), :mod:`.truth` (the catalogue row), :mod:`.files` (the folder on disk) and
:mod:`.survey` (:func:`make_survey`, the whole survey in worker processes).

Examples
--------
>>> from morphospace.data.synth import make_survey
>>> out = make_survey("/tmp/mock", n=60, seed=0, workers=1, progress=False)  # doctest: +SKIP
"""

from .files import (CATALOGUE_NAME, GENERATOR_VERSION, IMAGE_DIR, MARKER_NAME, is_synth_survey, read_marker,
                    survey_digest)
from .observe import render_bands
from .params import MAX_COMPANIONS, MORPHOLOGIES, morphology_of, sample_params
from .stretch import lupton_rgb
from .survey import make_survey, render_galaxy
from .truth import TRUTH_COLUMNS, truth_row

__all__ = ["make_survey", "render_galaxy", "render_bands", "sample_params", "morphology_of", "lupton_rgb",
           "truth_row", "read_marker", "is_synth_survey", "survey_digest", "GENERATOR_VERSION", "MARKER_NAME",
           "CATALOGUE_NAME", "IMAGE_DIR", "MORPHOLOGIES", "MAX_COMPANIONS", "TRUTH_COLUMNS"]
