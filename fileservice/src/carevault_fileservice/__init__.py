"""carevault fileservice: blob zone: encrypts and stores files as segmented streams under opaque ids."""
