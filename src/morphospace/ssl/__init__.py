"""Form first: a representation of galaxies that follows what they are, not how they are seen.

The default model of morphospace (``model.preset = "form"``) is built in three steps, one
module each, framework code (Lightning modules) beside the plain functions they train:

``augment``    nuisance augmentations (rotation, flips, jitter, scale, seeing, noise,
               brightness) on tensors, with kornia;
``losses``     NT-Xent (SimCLR) and VICReg, from their papers;
``embedder``   the CNN trunk (ImageNet EfficientNet-Lite0, or a small CNN from scratch), two
               pooled taps, the self-supervised head, the average over the 8 dihedral views;
``ssl``        self-supervised training of the head (frozen trunk: over a bank of views) or of
               the whole encoder (``form.train_trunk``, for GPUs);
``model``      :class:`~morphospace.vade.form_model.FormVaDE`: the embedder, a VaDE over the
               embedding, and an image decoder, behaving like a VaDE on images;
``generator``  the image decoder's training on the VaDE's codes;
``train``      the three trainings of a run, in order.

Data flow: masked cube -> embedder -> form embedding -> VaDE (mixture clusters, latent codes,
anomaly scores) -> image decoder (reconstructions, synthetic galaxies).
"""
