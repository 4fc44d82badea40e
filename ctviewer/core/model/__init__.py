"""What a model is: its config, layers and recipes, the predictor protocol, ensembles, bundles, inference."""
