"""Networks: generator, discriminators, identity extractor; frozen networks under ``frozen/``."""
