"""The catalogue: products and locations, the things stock is counted of and at."""
