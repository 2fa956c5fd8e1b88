"""nbgrader configuration of the alignment course (used by `make assignments/grade/export`)."""
c = get_config()  # noqa: F821  (provided by nbgrader)

c.CourseDirectory.course_id = "alignment-course"
# solutions/ holds the nbgrader *source* notebooks, assignments/ the generated *release*
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
# students may save checkpoints next to their notebook: copy nothing above 5 MB, 20 MB in all
c.CourseDirectory.max_file_size = 5000   # kilobytes
c.CourseDirectory.max_dir_size = 20000   # kilobytes
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "*.bin", "*.safetensors", "*.pt"]

# Per-cell timeout: the slowest graded cell (a short training run) takes < 60 s on a 2-core
# CPU in fast mode; nbgrader's default of 30 s would kill it.
c.Execute.timeout = 300
c.Execute.kernel_name = "python3"
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.enforce_metadata = True
