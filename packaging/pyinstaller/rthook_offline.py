# Runs inside the bundle before StoryStudio starts. The app itself reaches the network only
# when the user asks for a download; this also keeps the libraries' own usage reports off
# (a user who sets these variables keeps their own values).
import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
