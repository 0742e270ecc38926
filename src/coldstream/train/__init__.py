"""coldstream.train"""
