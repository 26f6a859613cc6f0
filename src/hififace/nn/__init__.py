"""Building blocks of the generator and discriminators."""
