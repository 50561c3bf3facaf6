"""spiral.services"""
