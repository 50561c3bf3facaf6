"""spiral.learning"""
