"""Which settings describe what: a trained model, the machine a command runs on, the embed stage,
and which stages read the maps', clusterings', comparisons' and the CNN study's.

The command line refuses a stage's ``--set`` of an earlier stage's setting by these
(:mod:`morphospace.cli.settings`).
"""

from __future__ import annotations

__all__ = ["ANALYSIS_READERS", "EMBED_KEYS", "MACHINE_KEYS", "MODEL_KEYS", "STAGE_ORDER"]

MODEL_KEYS = ("model.", "form.", "train.")  # prefixes: the trained model's settings
MACHINE_KEYS = ("train.accelerator", "train.devices", "train.num_nodes", "train.strategy", "train.precision",
                "train.num_threads", "train.loader_workers", "ingest.workers")
# what `embed` acts on besides the machine: the merge of the model's components, and the pixel-PCA
# baseline it fits (its components, on a sample of train.sample drawn with train.seed)
EMBED_KEYS = ("model.merge_components", "model.merge_elbow_on", "model.pca_components", "train.sample",
              "train.seed")


# the stages of a run in data-flow order, each reading what the ones before it wrote
STAGE_ORDER = ("ingest", "train", "embed", "reduce", "cluster", "compare", "report")
# the [cluster] and [study] settings, by the stages that read them (the first named to a stage that
# reads none of them): read from the code of each stage (pipeline/stages.py, analysis/reduce.py,
# analysis/cluster.py, analysis/compare.py, analysis/nuisance.py, pipeline/study.py). A stage given
# one that only earlier stages read refuses it: `compare --set cluster.kmeans_k=[3,4]` saved a K the
# clusterings on disk were not made with. `data.truth_label` is read by reduce (LDA), compare and
# report, and `[report]` by embed and report: neither is an earlier stage's alone after the ingest.
ANALYSIS_READERS = {
    # embed: its anomaly score; compare: its probe and intervention test
    "cluster.seed": ("cluster", "embed", "reduce", "compare"),
    "cluster.n_jobs": ("cluster", "reduce"),
    **dict.fromkeys(("cluster.reductions", "cluster.tsne_perplexity", "cluster.umap_n_neighbors",
                     "cluster.map_sample"), ("reduce",)),
    **dict.fromkeys(("cluster.kmeans_k", "cluster.methods", "cluster.representations", "cluster.gmm_k",
                     "cluster.gmm_covariance", "cluster.dbscan_min_samples", "cluster.hdbscan_min_cluster_size",
                     "cluster.density_max_dims", "cluster.silhouette_sample", "cluster.fit_sample"), ("cluster",)),
    **dict.fromkeys(("cluster.nuisance_columns", "cluster.invariance_sample"), ("compare",)),
    "study.": ("study",),  # the CNN feature study alone (which starts from the settings given, not the run's)
}
