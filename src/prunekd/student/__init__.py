"""Stage 4, the student: CP-Mobile and its front end, the one training loop, distillation, fine-tuning,
evaluation, the challenge submission."""
