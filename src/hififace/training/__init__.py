"""Training with Lightning (the only package that imports it): config, module, data module, trainer building.

Import the submodules directly (``hififace.training.build``); this package stays import-light.
"""
