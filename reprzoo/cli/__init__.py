"""The ``reprzoo`` command line: training through LightningCLI, catalogue and hub commands."""
