from morphospace.cli import main
