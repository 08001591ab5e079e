print("imagestore")
