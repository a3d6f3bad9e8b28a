"""The ``warpd`` command: :mod:`warpd.cli.main` parses and dispatches, a module per command.

Each command module has ``add_arguments(parser)`` and ``run(args)``; only the
module of the command being run is imported, so ``warpd --version`` and
``warpd --help`` load nothing heavy.
"""
