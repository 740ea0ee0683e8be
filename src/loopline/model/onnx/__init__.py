"""ONNX export of a fitted pipeline: conversion and loopline's own skl2onnx converters."""
