import socket, time
socks=[]
for i in range(40):
    try: socks.append(socket.create_connection(("127.0.0.1", 17393)))
    except Exception as e: print(i, e); break
time.sleep(3)
print(len(socks))
