"""Neural-network plumbing shared by the model layers: the CNN backbones."""
