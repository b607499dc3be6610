"""Neural network models: the VaDE and the published AstroVaDEr network."""
