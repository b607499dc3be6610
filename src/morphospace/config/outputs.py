"""Sections of the analysis and output stages: ``[cluster]``, ``[study]``, ``[report]``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from .base import Epochs, FilePath, LearningRate, Section, Seed, StudyBackbone, Text


# a number of clusters to fit: one cluster is no clustering
ClusterCount = Annotated[int, Field(ge=2, le=1000)]


MIN_MAP_ROWS = 5  # t-SNE and UMAP need a few neighbours a galaxy


class ClusterConfig(Section):
    """The analysis layer: reductions, clusterings, comparisons, nuisance audit (``[cluster]``).

    Attributes
    ----------
    kmeans_k : list of int
        K of the K-Means clusterings.
    methods : list of {'kmeans', 'dbscan', 'hdbscan', 'gmm'}
    representations : list of str
        Representation ids, or ``all``, ``embeddings``, ``reductions``.
    seed : int
    reductions : list of {'pca', 'tsne', 'umap', 'lda'}
    n_jobs : int
        Threads of t-SNE, UMAP (with a seed it is single-threaded) and the neighbour searches
        of DBSCAN and HDBSCAN (exact: their labels do not depend on it); -1: all. openTSNE's
        map depends on its thread count, not on the machine, so a fixed number (the default,
        2) gives the same map for the same seed on any machine; -1 does not.
    tsne_perplexity : float
    umap_n_neighbors : int
    gmm_k : list of int
        K tried by the Gaussian mixture (the BIC picks one); empty: ``kmeans_k``.
    gmm_covariance : {'diag', 'full', 'spherical', 'tied'}
    dbscan_min_samples : int
        0: twice the dimensions, within [4, 100]; eps from the knee of the k-distances.
    hdbscan_min_cluster_size : int
        0: 1% of the rows, at least 5.
    density_max_dims : int
        DBSCAN and HDBSCAN skip wider representations (slow, unreliable); 0: no limit.
    silhouette_sample : int
        Rows used to estimate the (quadratic) silhouette.
    fit_sample : int
        Above this many rows DBSCAN, HDBSCAN and the GMM are fitted on a reproducible sample of
        this many and extended to all rows by ``predict``; K-Means turns to MiniBatchKMeans.
        0: always fit on all rows.
    map_sample : int
        Above this many rows t-SNE and UMAP are fitted on a reproducible sample of this many,
        and every other row is placed at the median map position of its 10 nearest fitted
        rows (openTSNE's "median" placement of new points). 0: always fit on all rows.
    nuisance_columns : list of str
        Catalogue columns to audit; empty: chosen automatically.
    invariance_sample : int
        Galaxies of the intervention test (:mod:`morphospace.vade.invariance`: the run's own
        clusters of a sample shown again smaller, larger, turned, blurred, fainter, through the
        model: 16 s for 256 on sdss-gz1 on 2 cores, which leaves each share uncertain by about
        0.03); 0: no test.
    """

    kmeans_k: Annotated[list[ClusterCount], Field(min_length=1)] = [3, 4, 5, 6, 7, 8]
    methods: Annotated[list[Literal["kmeans", "dbscan", "hdbscan", "gmm"]], Field(min_length=1)] = [
        "kmeans", "dbscan", "hdbscan", "gmm"]
    representations: Annotated[list[Text], Field(min_length=1)] = ["all"]
    seed: Seed = 0
    reductions: list[Literal["pca", "tsne", "umap", "lda"]] = ["pca", "tsne", "umap", "lda"]
    n_jobs: Annotated[int, Field(ge=-1, le=4096)] = 2
    tsne_perplexity: Annotated[float, Field(ge=1.0, le=10_000.0)] = 30.0
    umap_n_neighbors: Annotated[int, Field(ge=2, le=10_000)] = 15
    gmm_k: list[ClusterCount] = []
    gmm_covariance: Literal["diag", "full", "spherical", "tied"] = "diag"
    dbscan_min_samples: Annotated[int, Field(ge=0, le=100_000)] = 0
    hdbscan_min_cluster_size: Annotated[int, Field(ge=0, le=10_000_000)] = 0
    density_max_dims: Annotated[int, Field(ge=0, le=100_000)] = 10
    silhouette_sample: Annotated[int, Field(ge=10, le=10_000_000)] = 5000
    fit_sample: Annotated[int, Field(ge=0, le=100_000_000)] = 50_000
    map_sample: Annotated[int, Field(ge=0, le=100_000_000)] = 100_000
    nuisance_columns: list[Text] = []
    invariance_sample: Annotated[int, Field(ge=0, le=1_000_000)] = 256

    @field_validator("n_jobs")
    @classmethod
    def _threads(cls, value: int) -> int:
        if value == 0:  # the libraries' n_jobs: -1 all cores, else a count
            raise PydanticCustomError("config", "cluster.n_jobs must be -1 (every core) or at least 1, got 0")
        return value

    @field_validator("hdbscan_min_cluster_size")
    @classmethod
    def _cluster_size(cls, value: int) -> int:
        if value == 1:  # HDBSCAN's clusters have two members at least: refused mid-stage, after the maps
            raise PydanticCustomError("config", "cluster.hdbscan_min_cluster_size must be 0 (chosen from the data) "
                                                "or at least 2, got 1")
        return value

    @field_validator("map_sample")
    @classmethod
    def _map_sample(cls, value: int) -> int:
        if 0 < value < MIN_MAP_ROWS:  # t-SNE and UMAP refused a sample of 2 mid-stage; 5 rows placed 55 more
            raise PydanticCustomError("config", f"cluster.map_sample must be 0 (every galaxy) or at least {MIN_MAP_ROWS}, "
                                                f"got {value}")
        return value


class StudyConfig(Section):
    """The CNN feature study (``[study]``, ``morphospace.study``).

    Attributes
    ----------
    backbone : str
        A registered backbone (``efficientnet-lite0``, ``resnet18``, ``small``, ``vade``, ``ssl`` ...).
    labels : str
        The catalogue label column to fine-tune on.
    mode : {'finetune', 'frozen'}
    epochs : int
    weights : str
        A weights file, for backbones without packaged weights.
    input_size : int
        Side images are resized to; 0: the backbone's default (112 for ImageNet nets).
    batch_size : int
    lr : float
        Of the head; a pretrained backbone gets 0.3 times this.
    patience : int
        Early stopping after this many epochs without a lower validation loss; 0: off.
    """

    backbone: StudyBackbone = "efficientnet-lite0"
    labels: Text = ""
    mode: Literal["finetune", "frozen"] = "finetune"
    epochs: Epochs = 5
    weights: FilePath = ""
    input_size: Annotated[int, Field(ge=0, le=1024)] = 0
    batch_size: Annotated[int, Field(ge=2, le=1_000_000)] = 64  # a batch norm needs two images
    lr: LearningRate = 1e-3
    patience: Annotated[int, Field(ge=0, le=100_000)] = 2

    @field_validator("input_size")
    @classmethod
    def _side(cls, value: int) -> int:
        if 0 < value < 32:  # the backbones' five stride-2 stages
            raise PydanticCustomError("config", "study.input_size must be 0 (the backbone's own) or at least 32 "
                                      "pixels, got {value}", {"value": value})
        return value


class ReportConfig(Section):
    """The HTML report (``[report]``).

    Attributes
    ----------
    thumb_size : int
        Side of a thumbnail in pixels.
    max_points : int
        The most galaxies on the map (a random subsample beyond): by default
        2,000,000, so a run of 10^6 shows every galaxy.
    gallery_size : int
        Galaxies per cluster gallery.
    thumb_format : {'webp', 'jpeg'}
        Of the sprite sheets of thumbnails.
    thumb_quality : int
        1 to 100.
    inline_limit_mb : float
        Sprite sheets up to this size go inside ``report.html``, larger ones beside it
        (64: the galleries' and map's thumbnails of up to ``inline_points`` galaxies at 48 px
        take 30-45 MB, so that page stays one file, as the README says).
    neighbours : int
        "More like this": nearest neighbours in the latent space.
    seed : int
        Of the random mosaic and of the subsample of the map.
    inline_points : int
        Up to this many points the explorer's data live inside ``report.html``
        (one self-contained file); beyond, they are written beside it in
        ``report_files/`` and loaded as needed.
    shard_points : int
        Beside the page: the per-galaxy data (ids, tooltip rows, neighbours)
        come in files of this many galaxies, loaded when first needed.
    large_thumb_size : int
        Beside the page: side of the map's thumbnails (at most ``thumb_size``),
        smaller so that a million of them stay a few hundred MB.
    """

    thumb_size: Annotated[int, Field(ge=8, le=512)] = 48
    max_points: Annotated[int, Field(ge=1, le=100_000_000)] = 2_000_000
    gallery_size: Annotated[int, Field(ge=1, le=1000)] = 16
    thumb_format: Literal["webp", "jpeg"] = "webp"
    thumb_quality: Annotated[int, Field(ge=1, le=100)] = 80
    inline_limit_mb: Annotated[float, Field(ge=0.0, le=10_000.0)] = 64.0
    neighbours: Annotated[int, Field(ge=1, le=1000)] = 8
    seed: Seed = 0
    inline_points: Annotated[int, Field(ge=1, le=100_000_000)] = 50_000
    shard_points: Annotated[int, Field(ge=16, le=10_000_000)] = 32_768
    large_thumb_size: Annotated[int, Field(ge=8, le=512)] = 32
