"""coldstream.model"""
