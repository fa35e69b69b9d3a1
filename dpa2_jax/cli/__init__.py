"""The ``dpa2-jax`` command line: ``main.py`` dispatches to one thin module per subcommand."""
