"""spiral.launch"""
