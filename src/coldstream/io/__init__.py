"""coldstream.io"""
