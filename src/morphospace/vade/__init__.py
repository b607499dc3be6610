"""The generative clustering model: a VAE with a Gaussian-mixture prior (VaDE; Jiang et al. 2017).

Model (framework code, torch):

``model``           the VaDE: mixture prior, closed-form loss, flip invariance, canonical frame;
``networks``        encoder / decoder presets (``default``, ``form``, ``astrovader``);
``astrovader_net``  the published AstroVaDEr network, and ``keras_import`` its Keras weights;
``generate``        synthetic galaxies of one mixture component (a method of every model);
``form_model``      the form-first VaDE: the form encoder (:mod:`morphospace.ssl`), a VaDE over
                    its embedding, and an image decoder (``form_decoder`` trains it).

Training and use:

``hparams``         hyper-parameters from the configuration, the published recipe, schedules;
``mixture``         the mixture initialisation after pretraining (BIC, K-Means, GMM);
``fitting``         the Lightning module and data, checkpoints, resume, DDP: ``fit_vade``;
``train``           ``train_run``, a run's training (``form_train`` for the form-first VaDE);
``io``              where a run keeps its model (``RUN/models/vade/model.pt``), save and load;
``embed``           per-galaxy outputs of a trained model, and ``figures`` its figures;
``merge``           mixture components merged into clusters by entropy (Baudry et al. 2010).
"""
