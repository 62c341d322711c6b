"""The Lua source of the SMS side's Redis scripts, shipped as package data beside this module."""
