"""The CNN feature study: fine-tuning, features and the study's figures."""
