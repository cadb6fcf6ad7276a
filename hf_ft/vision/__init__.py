"""Image-only building blocks shared by the image tasks: images, transforms, decoded-image cache, batch seeding,
`ImageTrainer`, imagefolder checks, image processors and channels-last. Imports the shared core, never a task."""
