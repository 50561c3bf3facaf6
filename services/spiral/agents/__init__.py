"""spiral.agents"""
