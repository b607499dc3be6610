"""What the representations say: reductions, clusterings, comparisons, probes, the nuisance audit.

``pixels``    the baseline representation: principal components of the pixels;
``reduce``    PCA, LDA, t-SNE and UMAP of an embedding;
``cluster``   K-Means, DBSCAN, HDBSCAN and Gaussian mixtures, with model selection;
``labels``    labellings encoded for scoring, label and nuisance columns, cube order;
``compare``   agreement between clusterings and labels (ARI, AMI, ...);
``probe``     linear probes of every embedding against the truth label;
``nuisance``  do clusters follow how a galaxy is seen (position angle, companions)?
"""
