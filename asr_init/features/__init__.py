"""MFCC extraction, the feature store on disk, and the pipeline that splices and normalises frames."""
