"""spiral.data"""
